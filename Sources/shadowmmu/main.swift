import ShadowMMUCommands

await ShadowMMUCommand.main()
