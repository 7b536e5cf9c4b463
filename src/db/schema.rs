//! Diesel table definitions, mirroring `migrations/`. Written by hand; `tests/api/schema.rs`
//! compares every table, column type, nullability and primary key with a migrated database.
#![allow(missing_docs)]

diesel::table! {
    customers (id) {
        id -> Uuid,
        given_name -> Text,
        family_name -> Text,
        email -> Text,
        phone -> Nullable<Text>,
        address -> Nullable<Jsonb>,
        status -> SmallInt,
        company -> Nullable<Text>,
        business_id -> Nullable<Text>,
        labels -> Jsonb,
        version -> BigInt,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
        delete_time -> Nullable<Timestamptz>,
        created_by -> Nullable<Text>,
        updated_by -> Nullable<Text>,
        external_ids -> Jsonb,
        merged_into -> Nullable<Uuid>,
    }
}

diesel::table! {
    customer_external_ids (source, external_id) {
        source -> Text,
        external_id -> Text,
        customer_id -> Uuid,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Text,
        secret_hash -> Bytea,
        scopes -> Array<Text>,
        create_time -> Timestamptz,
        expire_time -> Nullable<Timestamptz>,
        revoke_time -> Nullable<Timestamptz>,
        creator -> Nullable<Text>,
        rotate_time -> Nullable<Timestamptz>,
        previous_secret_hash -> Nullable<Bytea>,
        previous_secret_expire_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_key_audit (id) {
        id -> BigInt,
        api_key_id -> Uuid,
        action -> Text,
        actor -> Text,
        request_id -> Nullable<Uuid>,
        occur_time -> Timestamptz,
    }
}

diesel::table! {
    request_ids (request_id) {
        request_id -> Uuid,
        fingerprint -> Bytea,
        response -> Nullable<Jsonb>,
        create_time -> Timestamptz,
        response_pb -> Nullable<Bytea>,
        customer_id -> Nullable<Uuid>,
        forgotten_reason -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        event_id -> Uuid,
        aggregate -> Text,
        sequence -> BigInt,
        event_type -> Text,
        data -> Nullable<Jsonb>,
        actor -> Text,
        request_id -> Nullable<Uuid>,
        occur_time -> Timestamptz,
        position -> Nullable<BigInt>,
        publish_time -> Nullable<Timestamptz>,
        payload -> Nullable<Bytea>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    event_log (singleton) {
        singleton -> Bool,
        last_position -> BigInt,
        pruned_through -> BigInt,
    }
}

diesel::table! {
    companies (id) {
        id -> Uuid,
        display_name -> Text,
        domain -> Nullable<Text>,
        business_id -> Nullable<Text>,
        labels -> Jsonb,
        version -> BigInt,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
        delete_time -> Nullable<Timestamptz>,
        created_by -> Nullable<Text>,
        updated_by -> Nullable<Text>,
    }
}

diesel::table! {
    notes (id) {
        id -> Uuid,
        customer_id -> Uuid,
        text -> Text,
        author -> Text,
        version -> BigInt,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
        updated_by -> Nullable<Text>,
    }
}

diesel::table! {
    service_keys (name) {
        name -> Text,
        key -> Bytea,
        create_time -> Timestamptz,
    }
}

diesel::table! {
    erasure_log (customer_id) {
        customer_id -> Uuid,
        reason -> Text,
        reference -> Nullable<Text>,
        actor -> Text,
        request_id -> Nullable<Uuid>,
        erase_time -> Timestamptz,
        notes_erased -> BigInt,
        events_scrubbed -> BigInt,
        replays_erased -> BigInt,
    }
}

diesel::table! {
    operations (id) {
        id -> Uuid,
        kind -> Text,
        creator -> Text,
        fingerprint -> Bytea,
        state -> SmallInt,
        cancel_requested -> Bool,
        mode -> SmallInt,
        validate_only -> Bool,
        rows_read -> BigInt,
        rows_consumed -> BigInt,
        rows_committed -> BigInt,
        rows_rejected -> BigInt,
        created -> BigInt,
        updated -> BigInt,
        unchanged -> BigInt,
        report -> Nullable<Bytea>,
        error_code -> Nullable<Integer>,
        error_message -> Nullable<Text>,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}

diesel::table! {
    customer_merges (id) {
        id -> Uuid,
        target_id -> Uuid,
        source_ids -> Array<Uuid>,
        actor -> Text,
        request_id -> Nullable<Uuid>,
        merge_time -> Timestamptz,
        changed_fields -> Array<Text>,
        target_before -> Bytea,
        target_after -> Bytea,
        sources_before -> Array<Bytea>,
        moved_note_ids -> Array<Uuid>,
        moved_note_sources -> Array<Uuid>,
        unmerge_time -> Nullable<Timestamptz>,
        unmerged_by -> Nullable<Text>,
    }
}
