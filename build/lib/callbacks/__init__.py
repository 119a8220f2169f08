"""Lightning callbacks: throughput, student export."""
