"""Alert subscriptions (issue 7): percolator-matched subscriptions, exactly-once alerts, delivery channels."""
