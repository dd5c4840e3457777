from kvs_sentinel.program import main

raise SystemExit(main())
