"""The trainer: the only board process that imports TensorFlow (``python -m agent.trainer``).

Started on demand (socket activation by systemd, or by the agent's trainer supervisor, which
emulates it), kept warm while a federated run lasts, gone after an idle timeout. Never import
this package's submodules from the always-on agent: ``jobs`` pulls in Keras.
"""
