from calnotify.cli import main

raise SystemExit(main())
