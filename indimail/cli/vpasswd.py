"""vpasswd: set a virtual user's password (``-h`` crypt hash, ``-m`` SCRAM,
``-C`` keep a CRAM-usable clear text, ``-e`` store the text as given)."""

from __future__ import annotations

from twisted.internet import threads

from indimail.vdomain.admin import password_options, read_password, run_cli

USAGE = ("usage: vpasswd [--home dir] [-h MD5|SHA256|SHA512] [-m SCRAM-SHA-1|SCRAM-SHA-256] "
         "[-C] [-e] user@domain [password]")


async def _body(admin, opts, args):
    if len(args) not in (1, 2):
        raise SystemExit(USAGE)
    options = password_options(opts)
    password = args[1] if len(args) == 2 else \
        await threads.deferToThread(read_password, "vpasswd", args[0])
    return (await admin.set_password(args[0], password, **options)).address


def main(argv=None) -> None:
    run_cli("vpasswd", USAGE, "h:m:Ce", _body, argv)


if __name__ == "__main__":
    main()
