DROP TABLE invalidations;
DROP TABLE api_keys;
