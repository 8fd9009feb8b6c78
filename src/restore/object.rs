//! One object's task: look at what is on disk at its name, ask S3 what the plan needs, and
//! when the plan says so, download it ([`super::fetch`]), check it ([`super::check`]) and
//! place it ([`super::place`]).

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::fetch::{self, ObjectInfo};
use super::job::{io_failed, Ctx, Done, Job};
use super::place::{self, remove_stale, temp_name, Temp};
use super::plan::{self, Action, OnDisk, Readable};
use crate::report::Cause;
use crate::{FLOW, OUTPUT};

/// Restores one object. `permit` is its request permit (a large object gives it back once
/// its ranges start).
pub async fn restore_one(ctx: Arc<Ctx>, job: Job, permit: OwnedSemaphorePermit) -> Done {
    #[cfg(debug_assertions)]
    if ctx.panic_on.as_deref().is_some_and(|m| job.rel.contains(m)) {
        panic!("test hook: the task of {} panicked", job.rel);
    }
    let Job { rel, obj, dir } = job;
    let key = ctx.url.key(&rel);
    let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
    let disk = match &dir {
        Some(d) => match place::on_disk(d, &name) {
            Ok(l) => l,
            Err(err) => return io_failed("cannot look at the local file", err),
        },
        None => OnDisk::Nothing,
    };
    // A temporary name of this file left by a killed run (one that was placing it with
    // --overwrite, or one on a file system without unnamed files): removed unless a running
    // restore holds it.
    if let (Some(d), false) = (&dir, ctx.dry_run) {
        remove_stale(d, &temp_name(&name));
    }
    let mut known: Option<ObjectInfo> = None;
    let mut head: Option<plan::Head> = None;
    let action = loop {
        match plan::decide(&obj, &disk, head.as_ref(), ctx.overwrite, ctx.dry_run) {
            Action::Head if head.is_none() => {
                match fetch::head(&ctx.client, &ctx.url.bucket, &key).await {
                    Ok((info, restore)) => {
                        head = Some(plan::Head {
                            recorded_mtime_ns: info.recorded.mtime_ns,
                            readable: Readable::from_restore_header(restore.as_deref()),
                        });
                        known = Some(info);
                    }
                    Err(err) => return Done::Failed(err.cause(), err.to_string()),
                }
            }
            a => break a,
        }
    };
    let replace = match action {
        Action::Fetch { replace } => replace,
        Action::WouldFetch => {
            log::info!(target: FLOW, "(dryrun) download: {} to {}", ctx.shown_url(&key), ctx.shown_path(&rel));
            return Done::Restored {
                bytes: obj.size,
                method: None,
                unusable: Vec::new(),
                mode_defaulted: false,
            };
        }
        Action::AlreadyPresent => return Done::Unchanged,
        Action::Conflict(why) => return Done::Conflict(why),
        Action::Archived(why) => return Done::Archived(why),
        Action::Blocked(why) => return Done::Failed(Cause::LocalIo, why),
        Action::Head => {
            return Done::Failed(
                Cause::Internal,
                "the plan asked twice for HeadObject".into(),
            )
        }
    };
    let Some(dir) = dir else {
        return Done::Failed(Cause::LocalIo, "the directory is missing".into());
    };
    log::info!(target: OUTPUT, "download: {} to {}", ctx.shown_url(&key), ctx.shown_path(&rel));
    let temp = match Temp::create(dir, &name) {
        Ok(t) => t,
        Err(err) => return io_failed("cannot create a temporary file", err),
    };
    let fetched = if obj.size >= ctx.multipart.threshold {
        fetch::fetch_ranges(&ctx, &key, &temp, known, Some(permit)).await
    } else {
        let r = fetch::fetch_whole(&ctx, &key, &temp).await;
        drop(permit);
        r
    };
    let (info, method, got) = match fetched {
        Ok(x) => x,
        Err(d) => return d,
    };
    if let Err(d) = super::check::content(obj.size, &info, method.as_ref(), got.as_deref()) {
        return d;
    }
    let mtime = info
        .recorded
        .mtime_ns
        .unwrap_or(i128::from(obj.last_modified_ns));
    let mode_defaulted = info.recorded.mode.is_none();
    let mode = info.recorded.mode.unwrap_or(ctx.default_mode);
    let mut unusable = info.unusable;
    unusable.extend(place::apply_recorded(
        temp.file(),
        Some(mtime),
        Some(mode),
        &info.recorded,
        ctx.as_root,
    ));
    if let Err(err) = temp.place(&name, replace) {
        return if err.kind() == std::io::ErrorKind::AlreadyExists {
            Done::Conflict(
                "a file with that name appeared during the restore; not overwritten".into(),
            )
        } else {
            io_failed("cannot rename the file into place", err)
        };
    }
    ctx.progress.add_file();
    Done::Restored {
        bytes: info.size,
        method: method.map(|m| m.name()),
        unusable,
        mode_defaulted,
    }
}
