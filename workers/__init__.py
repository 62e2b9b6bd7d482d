"""Workers: consume the train and predict queues, run scikit-learn, store models, emit events.

The learning itself (``estimators``, ``training``, ``prediction``) is plain functions of data in,
result out; ``worker`` connects them to a broker and ``main`` is the process entry point.
"""
