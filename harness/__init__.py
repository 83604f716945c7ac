"""Real servers for tests, the demo and benchmarks: Redis, moto S3 and a private Dovecot.

Each runs on a free 127.0.0.1 port, as a child process that dies with us, and is stopped by
its PID. Nothing here touches system services or their configuration.
"""

from harness.corpus import CORPUS_DIR, as_pop3, corpus_files, listed_size
from harness.dovecot import Dovecot, MailUser
from harness.ports import free_port
from harness.process import ServerStartError
from harness.redis_server import RedisServer
from harness.s3_server import MotoS3

__all__ = [
    "CORPUS_DIR",
    "Dovecot",
    "MailUser",
    "MotoS3",
    "RedisServer",
    "ServerStartError",
    "as_pop3",
    "corpus_files",
    "free_port",
    "listed_size",
]
