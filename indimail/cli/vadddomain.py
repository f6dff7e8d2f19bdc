"""vadddomain: add a virtual domain and its postmaster (IndiMail's command)."""

from __future__ import annotations

from twisted.internet import threads

from indimail.vdomain.admin import hash_scheme, read_password, run_cli

USAGE = "usage: vadddomain [--home dir] [-h hash] domain [postmaster-password]"


async def _body(admin, opts, args):
    if not args:
        raise SystemExit(USAGE)
    domain = args[0]
    scheme = "SHA512-CRYPT"
    for key, value in opts:
        if key == "-h":
            scheme = hash_scheme(value)
    if len(args) > 1:
        password = args[1]
    else:
        password = await threads.deferToThread(read_password, "vadddomain",
                                               f"postmaster@{domain}")
    await admin.add_domain(domain, password, scheme=scheme)
    return domain.strip().lower()


def main(argv=None) -> None:
    run_cli("vadddomain", USAGE, "h:", _body, argv)


if __name__ == "__main__":
    main()
