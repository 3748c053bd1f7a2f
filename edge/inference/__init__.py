"""On-device inference stages: detector, aligner, embedder, matcher, pose and gestures."""
