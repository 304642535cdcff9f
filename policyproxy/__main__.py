import sys

from policyproxy.cli.main import main

if __name__ == "__main__":   # worker processes import this module too, and must not run the CLI
    sys.exit(main())
