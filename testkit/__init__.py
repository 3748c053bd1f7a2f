"""What tests and benchmarks share: brokers they start on loopback, the RabbitMQ cluster, hostile inputs, disk
filling, a door as a child process. A plain package: it never imports pytest or the test suite (import-linter
keeps it so), so a benchmark runs where only the bench extra is installed."""
