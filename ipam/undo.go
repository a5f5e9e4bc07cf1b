package ipam

import "slices"

type undoKind uint8

const (
	undoInsert  undoKind = iota // a free interval was inserted: remove it
	undoRemove                  // a free interval was removed: insert it again
	undoFirst                   // a free interval's first slot changed: restore it
	undoInUse                   // a free list's inUse changed: restore it
	undoList                    // a pool family's free list was replaced or dropped: restore it
	undoHolders                 // an address's holders changed: restore them
)

// undoOp reverses one change. Free intervals are found again by their
// last slot, not by node, as a removal and an insert of the same interval
// make a new node.
type undoOp struct {
	kind        undoKind
	list        *freeList     // the free list changed (undoList: the one replaced, nil for none)
	first, last u128          // the interval (undoFirst: the old first slot)
	inUse       uint64        // undoInUse: the old count
	key         poolFam       // undoList: the list's pool and family
	fam         Family        // undoHolders: the address's family
	holders     []*serviceRow // undoHolders: the old holders, nil for none
}

// maxKeptUndo is the capacity of undo log kept between calls, for the few
// entries an allocation makes without allocating.
const maxKeptUndo = 64

// reserve makes room for n more undo entries, so that a bulk change (a
// Restore of many rows) grows the log once.
func (ix *indexes) reserve(n int) {
	ix.undo = slices.Grow(ix.undo, n)
}

// commit makes the changes since the last commit permanent.
func (ix *indexes) commit() {
	if cap(ix.undo) > maxKeptUndo {
		ix.undo = nil // a Restore's log: do not keep it
	} else {
		clear(ix.undo) // drop the references to replaced lists and rows
		ix.undo = ix.undo[:0]
	}
	ix.sorted = [2][]u128{}
}

// rollback reverses the changes since the last commit, newest first.
func (ix *indexes) rollback() {
	for i := len(ix.undo) - 1; i >= 0; i-- {
		op := &ix.undo[i]
		l := op.list
		switch op.kind {
		case undoInsert:
			l.t.remove(op.last)
		case undoRemove:
			l.t.insert(op.last, op.first)
		case undoFirst:
			l.t.get(op.last).val = op.first
		case undoInUse:
			l.inUse = op.inUse
		case undoList:
			if l == nil {
				delete(ix.free, op.key)
			} else {
				ix.free[op.key] = l
			}
		case undoHolders:
			ix.setHoldersRaw(op.fam, op.last, op.holders)
		}
	}
	ix.commit()
}
