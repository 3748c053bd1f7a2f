"""What tests and benchmarks share: brokers they start on loopback, the RabbitMQ cluster, hostile inputs, disk filling. A plain package: it never imports pytest or the test suite."""
