from funcsim.cli import entry

entry()
