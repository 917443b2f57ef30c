//! macOS: `getgrouplist` takes and fills `int`.

use std::ffi::CStr;

/// The groups the user database gives `name`, whose primary group is `gid`.
pub fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    let mut groups: Vec<libc::c_int> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; `groups` has room for `count` entries.
        let rc = unsafe {
            libc::getgrouplist(
                name.as_ptr(),
                gid as libc::c_int,
                groups.as_mut_ptr(),
                &mut count,
            )
        };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups.into_iter().map(|g| g as u32).collect();
        }
        if groups.len() >= 65_536 {
            return Vec::new();
        }
        groups.resize(groups.len() * 2, 0);
    }
}
