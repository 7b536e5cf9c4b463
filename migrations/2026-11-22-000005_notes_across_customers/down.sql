DROP INDEX notes_create_time_idx;
