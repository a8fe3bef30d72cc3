from mailcloak.cli import main

raise SystemExit(main())
