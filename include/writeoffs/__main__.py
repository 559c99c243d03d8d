from writeoffs.cli import main

raise SystemExit(main())
