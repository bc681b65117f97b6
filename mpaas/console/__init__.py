"""The web console's server side: accounts, cookie sessions, the session API and the page shell.

A core part above identity (docs/architecture.md): the admin API's guard accepts a
console session through the hook in :mod:`mpaas.identity.guard`, so every page's call
is checked against the account's role on the server.
"""
