-- issue 15 (API throughput): nothing for SQLite. PostgreSQL's 0016 adds kb_api_order_rows (the order placed and
-- answered with its codes in one round trip); SQLite's order body already runs in one transaction of this process.
SELECT 1;
