from linuxabi.cli import entry

entry()
