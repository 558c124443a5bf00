"""`python -m clusterqc` is the same as the `clusterqc` command."""

from clusterqc.cli import main

if __name__ == "__main__":
    main()
