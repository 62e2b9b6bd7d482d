"""mlgate: machine-learning training and prediction as asynchronous jobs behind gRPC.

The generated wire contract lives in ``mlgate.v1`` (built from ``protos/`` by ``make gen``);
this package holds the few ideas every component shares: ids, errors and settings.
"""
