"""SMTP AUTH: SASL mechanisms, password schemes and ``twisted.cred`` checkers.

How a line-based protocol uses this package::

    ctx = AuthContext(portal, hostname, scram_source=file_checker,
                      channel_binding=transport_binding(transport),
                      plus_advertised=tls_on, session_env=env)
    offered = advertised_mechanisms(env, capabilities(portal), tls=tls_on)
    mech = make_mechanism(name, ctx)            # KeyError: unknown mechanism
    result = await mech.start(decode_response(initial) if initial else None)
    while isinstance(result, Challenge):        # send "334 " + encode_challenge(result.data)
        result = await mech.respond(decode_response(next_line))   # MalformedResponse: 501
    # Success(avatar, mechanism): avatar.username, avatar.relay -> 235
    # AuthFailed(code, enhanced, text): reply with result.reply()

Modules: :mod:`~indimail.auth.sasl` (results, base64 framing),
:mod:`~indimail.auth.mechanisms`, :mod:`~indimail.auth.scram`,
:mod:`~indimail.auth.advertise`, :mod:`~indimail.auth.channelbinding`,
:mod:`~indimail.auth.credentials`, :mod:`~indimail.auth.schemes`,
:mod:`~indimail.auth.checkers` (password file),
:mod:`~indimail.auth.checkpassword` (qmail-smtpd's checkpassword programs),
:mod:`~indimail.auth.realm` (portal, realm, avatar, capabilities).
"""
