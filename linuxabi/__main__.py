from linuxabi.cli import main

raise SystemExit(main())
