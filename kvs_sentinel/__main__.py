from kvs_sentinel.cli import main

raise SystemExit(main())
