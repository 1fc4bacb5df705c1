"""What the tests share: running the CLI on real MNIST, recording callbacks, networks named by
class path, dataset files written in their real formats, a PostgreSQL server."""
