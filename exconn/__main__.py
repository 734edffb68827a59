from exconn.cli import main

raise SystemExit(main())
