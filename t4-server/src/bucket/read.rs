//! Reading t4's records from a bucket, with the core's layout and decoders
//! (`t4_core::remote::layout`, `t4_core::checkpoint`): the formats are defined once, there.

use anyhow::Context as _;
use bytes::Bytes;
use t4::object_io::ObjectIo;
use t4_core::checkpoint::load::Loader;
use t4_core::mvcc::CheckpointImage;
use t4_core::object::{ObjectError, ObjectMeta, ObjectRequest, ObjectResponse};
use t4_core::remote::layout::{
    self, CheckpointRecord, Manifest, Versioned, WriterRecord, decode_record,
};

/// A bucket prefix opened for reading.
pub struct Bucket {
    /// The client and prefix.
    pub io: ObjectIo,
    /// `s3://bucket/prefix`, for messages.
    pub name: String,
}

impl Bucket {
    /// The object at `key` (relative to the prefix), or `None` if absent.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self
            .io
            .execute(ObjectRequest::Get {
                key: key.to_string(),
            })
            .await
        {
            Ok(ObjectResponse::Got { bytes, .. }) => Ok(Some(bytes)),
            Ok(other) => anyhow::bail!("unexpected answer to a GET of {key}: {other:?}"),
            Err(ObjectError::NotFound) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key} in {}", self.name)),
        }
    }

    /// The record at `key`, decoded, or `None` if absent.
    pub async fn record<T>(&self, key: &str) -> anyhow::Result<Option<T>>
    where
        T: for<'de> serde::Deserialize<'de> + Versioned,
    {
        match self.get(key).await? {
            Some(bytes) => Ok(Some(decode_record(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every object under `prefix` (relative), sorted.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<ObjectMeta>> {
        self.io
            .list(prefix)
            .await
            .with_context(|| format!("listing {prefix} in {}", self.name))
    }

    /// The writer record, if any node ever wrote the prefix.
    pub async fn writer(&self) -> anyhow::Result<Option<WriterRecord>> {
        self.record(layout::WRITER).await
    }

    /// The manifest, if one was written.
    pub async fn manifest(&self) -> anyhow::Result<Option<Manifest>> {
        self.record(layout::MANIFEST).await
    }

    /// Every checkpoint index record in the bucket, oldest first, with its key.
    pub async fn checkpoints(&self) -> anyhow::Result<Vec<(String, CheckpointRecord)>> {
        let mut out = Vec::new();
        for meta in self.list("ckp/").await? {
            if let Some(record) = self.record::<CheckpointRecord>(&meta.key).await? {
                out.push((meta.key, record));
            }
        }
        out.sort_by_key(|(_, r)| r.index);
        Ok(out)
    }

    /// Downloads and checks a checkpoint's data files and assembles its image.
    pub async fn image(&self, record: &CheckpointRecord) -> anyhow::Result<CheckpointImage> {
        let mut loader = Loader::default();
        for (i, file) in record.files.iter().enumerate() {
            let key = layout::data_key(&file.sha256);
            let bytes = self
                .get(&key)
                .await?
                .with_context(|| format!("{key} is missing from {}", self.name))?;
            loader
                .add(&file.sha256, &bytes)
                .map_err(|reason| anyhow::anyhow!("{key} is damaged: {reason}"))?;
            eprintln!(
                "loaded data file {}/{} ({} bytes)",
                i + 1,
                record.files.len(),
                bytes.len()
            );
        }
        Ok(CheckpointImage {
            index: record.index,
            revision: record.revision,
            compact_revision: record.compact_revision,
            kvs: loader.finish(),
            leases: record.leases.clone(),
            auth: std::sync::Arc::new(record.auth.clone()),
        })
    }
}
