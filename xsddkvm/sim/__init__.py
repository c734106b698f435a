"""The simulated XenServer host: a driver chosen by URL (``sim://default``), not a mock.

It serves the real XML-RPC envelope, ``PUT /import`` of real XVA streams, ``CONNECT /console``
with a vt100 first-boot dialog, and guests whose SSH server runs commands for real in a
per-VM sandbox directory. The sandbox is a simulator, not an isolation boundary: guest
commands run as the user who started the simulator.

Nothing here imports the client side of xsddkvm (``xapi/``, ``stages/``, ``guest/``).
"""
