import sys

from policyproxy.cli.main import main

sys.exit(main())
