"""`python -m local.simulator`: serve the WhatsApp simulator (make dev starts it)."""

from local.simulator.server import main

raise SystemExit(main())
