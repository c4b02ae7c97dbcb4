import ShadowMMUCommands

ShadowMMUCommand.runCommandLine()
