"""The board's side of federated training: SuperNode and trainer supervision, the thin
ClientApp, the budget gate and the ClientApp <-> trainer wire format. Never imports TensorFlow.
"""
