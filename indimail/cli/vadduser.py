"""vadduser: add a virtual user (``-c`` gecos, ``-q`` quota, ``-h``/``-m``/``-C``/``-e``
choose how the password is stored, as for vpasswd)."""

from __future__ import annotations

from twisted.internet import threads

from indimail.vdomain.admin import password_options, read_password, run_cli

USAGE = ("usage: vadduser [--home dir] [-c gecos] [-q quota] [-h MD5|SHA256|SHA512] "
         "[-m SCRAM-SHA-1|SCRAM-SHA-256] [-C] [-e] user@domain [password]")


async def _body(admin, opts, args):
    if len(args) not in (1, 2):
        raise SystemExit(USAGE)
    options = password_options(opts)
    for key, value in opts:
        if key == "-c":
            options["gecos"] = value
        elif key == "-q":
            options["quota"] = value
    password = args[1] if len(args) == 2 else \
        await threads.deferToThread(read_password, "vadduser", args[0])
    return (await admin.add_user(args[0], password, **options)).address


def main(argv=None) -> None:
    run_cli("vadduser", USAGE, "c:q:h:m:Ce", _body, argv)


if __name__ == "__main__":
    main()
