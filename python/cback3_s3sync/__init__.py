"""cback3-s3sync: mirror a local directory into an S3 bucket prefix and prove the copy is complete.

A Rust implementation of Cedar Backup 3's ``cback3-amazons3-sync``. The command of the
same name and :mod:`cback3_s3sync.amazons3` (a drop-in for
``CedarBackup3.tools.amazons3``) are its Python face.
"""

from cback3_s3sync._core import __version__
from cback3_s3sync.amazons3 import Options, cli

__all__ = ["Options", "__version__", "cli"]
