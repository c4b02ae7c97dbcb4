import ShadowMMUCommands

ShadowMMUCommand.main()
