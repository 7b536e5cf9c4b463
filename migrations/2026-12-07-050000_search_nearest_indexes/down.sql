DROP INDEX customers_given_name_nearest_idx;
DROP INDEX customers_family_name_nearest_idx;
DROP EXTENSION IF EXISTS btree_gist;
