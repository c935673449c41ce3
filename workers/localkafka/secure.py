"""The local broker's secure mode: one SASL_SSL listener (TLS + SCRAM-SHA-512), ACLs enforced.

Files under `<state_dir>/credentials/`, made once on the spot and kept across restarts:

    ca.pem, ca.key                      the local CA (ca.key signs; keep it, never ship it)
    broker/keystore.pem                 broker key + certificate chain (ssl.keystore.type=PEM)
    users/<name>/password               SCRAM-SHA-512 password, seeded at storage format time
    users/<name>/client.pem, client.key client certificate and its key, encrypted with
    users/<name>/key-password           this password
    users/<name>/kafka.env              ONTIME_KAFKA__* lines for that principal

The client listener requires both a client certificate signed by the CA and a SCRAM login; the
principal is the SCRAM user. The controller listener is TLS with client certificates too, so
only the broker's own certificate (`User:ontime-broker`, a super user) can act as the cluster.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from workers.kafka.acls import principals
from workers.localkafka.config import HOST, write_private

if TYPE_CHECKING:
    from workers.localkafka.tls import Issued

ADMIN = "admin"
BROKER_PRINCIPAL = "ontime-broker"
MECHANISM = "SCRAM-SHA-512"
LISTENER = "SECURE"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


def users() -> list[str]:
    """SCRAM users of a secure local broker: the admin (super user) and every pipeline principal."""
    return [ADMIN, *principals()]


class Credentials:
    """The CA, certificates and SCRAM passwords of one secure local broker."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def keystore(self) -> Path:
        return self.root / "broker" / "keystore.pem"

    def user_dir(self, user: str) -> Path:
        return self.root / "users" / user

    def password_file(self, user: str) -> Path:
        return self.user_dir(user) / "password"

    def env_file(self, user: str) -> Path:
        return self.user_dir(user) / "kafka.env"

    def exists(self) -> bool:
        return self.ca_pem.is_file() and self.keystore.is_file() and self.password_file(ADMIN).is_file()

    def ensure(self) -> None:
        """Make the CA, the broker's keystore and every user's password and certificate, once."""
        if self.exists():
            return
        from workers.localkafka.tls import make_ca  # `cryptography`: only a secure broker needs it

        ca = make_ca()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        write_private(self.ca_key, ca.key_pem())
        self.ca_pem.write_bytes(ca.cert_pem)
        broker = _issue(ca, BROKER_PRINCIPAL, server=True)
        write_private(self.keystore, broker.key_pem() + broker.cert_pem)
        for user in users():
            self.issue_client(ca, user)
            write_private(self.password_file(user), (secrets.token_urlsafe(24) + "\n").encode())

    def issue_client(self, ca: Issued, user: str) -> None:
        """A client certificate for `user`, its key encrypted with a fresh key password."""
        client = _issue(ca, user, server=False)
        key_password = secrets.token_urlsafe(18)
        folder = self.user_dir(user)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        (folder / "client.pem").write_bytes(client.cert_pem + ca.cert_pem)
        write_private(folder / "client.key", client.key_pem(key_password))
        write_private(folder / "key-password", (key_password + "\n").encode())

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def redact(self, text: str) -> str:
        """`text` with every user's password masked (for tool output quoted in an error)."""
        for user in self.known_users():
            text = text.replace(self.password(user), "**********")
        return text

    def known_users(self) -> list[str]:
        """Every user with a credentials folder: the seeded ones and any added by `rotate`."""
        folder = self.root / "users"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def new_password(self, user: str) -> str:
        """A fresh password for `user` (its folder and client certificate made if it is new).

        Only the file changes here; the broker learns the password through the admin API.
        """
        if not self.password_file(user).parent.is_dir():
            from workers.localkafka.tls import load_ca

            self.issue_client(load_ca(self.ca_pem, self.ca_key), user)
        password = secrets.token_urlsafe(24)
        pending = self.password_file(user).with_name("password.new")
        write_private(pending, (password + "\n").encode())
        return password

    def commit_password(self, user: str) -> None:
        """Make the password from `new_password` the one clients read (after the broker took it)."""
        self.password_file(user).with_name("password.new").replace(self.password_file(user))

    def reissue_certificates(self) -> None:
        """New broker and client certificates (and client key passwords) from the same CA."""
        from workers.localkafka.tls import load_ca

        ca = load_ca(self.ca_pem, self.ca_key)
        broker = _issue(ca, BROKER_PRINCIPAL, server=True)
        write_private(self.keystore, broker.key_pem() + broker.cert_pem)
        for user in self.known_users():
            self.issue_client(ca, user)

    def settings(self, user: str, bootstrap: str) -> dict[str, str]:
        """`KafkaSettings` fields (as `kafka:` overrides) that log in as `user` over TLS + SCRAM."""
        folder = self.user_dir(user)
        return {
            "bootstrap_servers": bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_username": user,
            "sasl_password_file": str(self.password_file(user)),
            "ssl_ca_location": str(self.ca_pem),
            "ssl_certificate_location": str(folder / "client.pem"),
            "ssl_key_location": str(folder / "client.key"),
            "ssl_key_password_file": str(folder / "key-password"),
        }

    def write_env_files(self, bootstrap: str) -> None:
        """users/<name>/kafka.env: `set -a; . kafka.env; set +a` makes ontime log in as <name>."""
        for user in self.known_users():
            fields = self.settings(user, bootstrap).items()
            lines = [f"ONTIME_KAFKA__{key.upper()}={value}" for key, value in fields]
            write_private(self.env_file(user), ("\n".join(lines) + "\n").encode())

    def scram_format_args(self) -> list[str]:
        """`kafka-storage format` arguments that seed every user's SCRAM credential."""
        args: list[str] = []
        for user in users():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={self.password(user)}]"]
        return args


def secure_properties(port: int, controller_port: int, creds: Credentials) -> dict[str, str]:
    """server.properties entries that replace the plaintext listener with SASL_SSL and add ACLs."""
    login = f'{_SCRAM_LOGIN} required username="{ADMIN}" password="{creds.password(ADMIN)}";'
    listeners = f"{LISTENER}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
    return {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "inter.broker.listener.name": LISTENER,
        "listener.security.protocol.map": f"{LISTENER}:SASL_SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": login,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(creds.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(creds.ca_pem),
        # Per listener: a broker-wide ssl.client.auth does not reach SASL_SSL listeners.
        f"listener.name.{LISTENER.lower()}.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.endpoint.identification.algorithm": "https",
        # The certificate's CN is the principal on the controller listener: User:ontime-broker.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),.*$/$1/,RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:{BROKER_PRINCIPAL}",
        "allow.everyone.if.no.acl.found": "false",
    }


def _issue(ca: Issued, common_name: str, server: bool) -> Issued:
    from workers.localkafka.tls import issue

    return issue(ca, common_name, server)
