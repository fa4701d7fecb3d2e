"""Front-ends, encoders, the shared decoders, the CTC head and the seq2seq model."""
