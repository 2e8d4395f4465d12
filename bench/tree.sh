# Shared by the benchmarks (sourced): a realistic OS-like tree from the host's files.
# Needs, from the caller: $work (scratch dir), $kver, $SOURCE, $SOURCE_DIRS, die(), and the
# kernel files $work/kernel/vmlinuz and $work/kernel/initramfs.img.
# make_tree DIR BYTES: entries of SOURCE/SOURCE_DIRS in find's pre-order (without lib/modules)
# until BYTES of files are taken, copied with owners, modes, times, xattrs, ACLs and hardlinks;
# plus lib/modules/<kver>/{vmlinuz,initramfs.img} and lib/os-release. Prints the bytes taken.
make_tree() {
    local dest=$1 limit=$2 list=$work/files.list taken=0 type bytes path d dirs=()
    : >"$list"
    for d in $SOURCE_DIRS; do [ -d "$SOURCE/$d" ] && [ ! -L "$SOURCE/$d" ] && dirs+=("$d"); done
    ((${#dirs[@]})) || die "none of '$SOURCE_DIRS' is a directory in '$SOURCE'"
    while IFS=' ' read -r -d '' type bytes path; do
        if [ "$type" = f ]; then
            ((taken + bytes > limit)) && break
            taken=$((taken + bytes))
        fi
        printf '%s\0' "$path" >>"$list"
    done < <(cd "$SOURCE" && find "${dirs[@]}" -xdev -path lib/modules -prune -o -printf '%y %s %p\0')
    mkdir "$dest"
    tar -C "$SOURCE" --null --no-recursion -T "$list" --xattrs --xattrs-include='*' --acls -cf - |
        tar -C "$dest" -xf - --xattrs --xattrs-include='*' --acls --numeric-owner -p
    mkdir -p "$dest/lib/modules/$kver"
    cp "$work/kernel/vmlinuz" "$work/kernel/initramfs.img" "$dest/lib/modules/$kver/"
    rm -f "$dest/lib/os-release"
    printf 'NAME="Bench OS"\nPRETTY_NAME="Bench OS 1"\nID=bench\nVERSION_ID=1\n' >"$dest/lib/os-release"
    echo "$taken"
}

# add_modules DIR: SOURCE's lib/modules as well (a real OS tree's kernel modules, most of its
# inodes and bytes), without its kernel images and initrds, so that the fake kernel stays the only
# one either tool finds. Prints the bytes added.
add_modules() {
    local dest=$1
    [ -d "$SOURCE/lib/modules" ] || die "'$SOURCE' has no lib/modules"
    tar -C "$SOURCE" --xattrs --xattrs-include='*' --acls --exclude='vmlinuz*' --exclude='initrd*' \
        --exclude='initramfs*' -cf - lib/modules |
        tar -C "$dest" -xf - --xattrs --xattrs-include='*' --acls --numeric-owner -p
    (cd "$SOURCE" && find lib/modules -type f ! -name 'vmlinuz*' ! -name 'initrd*' ! -name 'initramfs*' -printf '%s\n') |
        awk '{ s += $1 } END { print s + 0 }'
}
