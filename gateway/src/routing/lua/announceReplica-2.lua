-- Announces a gateway replica and where the others reach it.
--   KEYS[1] replicas       <prefix>{control}:replicas       (zset gateway id -> expiry)
--   KEYS[2] replica URLs   <prefix>{control}:replicas:url   (hash gateway id -> internal URL)
--   ARGV[1] gateway id  ARGV[2] internal URL  ARGV[3] expiry (epoch ms)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
