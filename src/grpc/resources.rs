//! Companies and notes as their proto messages, and back: the conversions of the company
//! and note RPCs (and of their events). Output-only fields of requests are ignored
//! (AIP-203).

use super::timestamp;
use crate::{
    domain::{
        company::{Company, CompanyData, CompanyInput},
        note::{Note, NoteInput},
    },
    pb,
};

/// The client-settable fields of a proto company.
pub fn company_input(company: &pb::Company) -> CompanyInput {
    CompanyInput {
        display_name: company.display_name.clone(),
        domain: company.domain.clone(),
        business_id: company.business_id.clone(),
        labels: company.labels.clone(),
    }
}

/// A stored company as its proto message.
pub fn company_to_proto(company: Company) -> pb::Company {
    let name = company.name().to_string();
    let etag = company.etag();
    let data = company.data;
    pb::Company {
        name,
        uid: company.id.to_string(),
        display_name: data.display_name,
        domain: data.domain.unwrap_or_default(),
        business_id: data.business_id.unwrap_or_default(),
        labels: data.labels,
        etag,
        create_time: Some(timestamp(company.create_time)),
        update_time: Some(timestamp(company.update_time)),
        delete_time: company.delete_time.map(timestamp),
    }
}

/// A proto company holding only the values of `paths`; every other field is unset.
pub fn company_fields(data: &CompanyData, paths: &[String]) -> pb::Company {
    let mut out = pb::Company::default();
    for path in paths {
        match path.as_str() {
            "display_name" => out.display_name.clone_from(&data.display_name),
            "domain" => out.domain = data.domain.clone().unwrap_or_default(),
            "business_id" => out.business_id = data.business_id.clone().unwrap_or_default(),
            "labels" => out.labels.clone_from(&data.labels),
            _ => {}
        }
    }
    out
}

/// The client-settable fields of a proto note.
pub fn note_input(note: &pb::Note) -> NoteInput {
    NoteInput {
        text: note.text.clone(),
    }
}

/// A stored note as its proto message.
pub fn note_to_proto(note: Note) -> pb::Note {
    pb::Note {
        name: note.name().to_string(),
        etag: note.etag(),
        text: note.data.text,
        author: note.author,
        create_time: Some(timestamp(note.create_time)),
        update_time: Some(timestamp(note.update_time)),
    }
}
