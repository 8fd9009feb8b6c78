"""``python -m cback3_s3sync``: the same as the ``cback3-amazons3-sync`` command."""

from cback3_s3sync.amazons3 import main

if __name__ == "__main__":
    main()
