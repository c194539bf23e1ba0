# What zsh offers for a command line with the completion script loaded, one "<<match>>" per line (the compadd capture
# of zsh-capture-completion: an interactive zsh in a pseudo-terminal, TAB bound to complete-word, compadd printing).
# usage: zsh -f zsh_complete.zsh SCRIPT "command line" [ROOT]   (ROOT: a zsh unpacked from its .deb instead of /)
script=$1 line=$2 root=${3:-}
[[ -n $root ]] && module_path=($root/usr/lib/x86_64-linux-gnu/zsh/*(/[1]))
zmodload zsh/zpty || exit 3
zpty z env -i HOME=${TMPDIR:-/tmp} PATH=/usr/bin:/bin TERM=dumb ${root:+$root/bin/}zsh -f -i
[[ -n $root ]] && zpty -w z "module_path=($module_path); fpath=($root/usr/share/zsh/functions/*/*(/) $root/usr/share/zsh/functions/*(/))"
zpty -w z "autoload -U compinit && compinit -u -D"
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false"
# compadd prints what it is given and adds it too (zsh's fallbacks, all files when no folder matched, then behave as
# they do); the interactive shell takes no comments, so none inside the quotes
zpty -w z 'compadd () {
  [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]] && { builtin compadd "$@"; return $? }
  typeset -a __hits
  builtin compadd -A __hits "$@"
  local h; for h in $__hits; do print -r -- "<<$h>>"; done
  builtin compadd "$@"
}'
zpty -w z "bindkey '^I' complete-word"
zpty -w z "null-line () { echo -E - \$'\\0' }; compprefuncs=( null-line ); comppostfuncs=( null-line exit )"
zpty -w z "source ${(q)script}"
zpty -w z "$line"$'\t'
integer seen=0
while zpty -r z; do :; done | while IFS= read -r text; do
  if [[ $text == *$'\0\r' ]]; then (( seen++ )) && exit 0 || continue; fi
  (( seen )) && print -r -- "$text"
done
