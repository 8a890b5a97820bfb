from linuxabi.entry import entry

entry()
