//! Linux: `getgrouplist` takes and fills `gid_t`.

use std::ffi::CStr;

/// The groups the user database gives `name`, whose primary group is `gid`.
pub fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; `groups` has room for `count` entries.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if groups.len() >= 65_536 {
            return Vec::new();
        }
        let want = (count.max(0) as usize).max(groups.len() * 2);
        groups.resize(want, 0);
    }
}
