from tea.cli import main

raise SystemExit(main())
