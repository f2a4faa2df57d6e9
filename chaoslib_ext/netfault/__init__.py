"""network: userspace fault injection (a TCP fault proxy and a fault-injecting DNS server).

Nothing here knows about drivers: the local, Docker and Kubernetes drivers all place these in
front of whatever they target.
"""
