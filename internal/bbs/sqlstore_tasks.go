package bbs

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Tasks in the SQL store: the tasks table (migration 2), the whole Task as
// JSON in data, task_guid, domain, cell_id and state beside it for queries.

func sqlNotFoundTask(guid string) error {
	return NewError(ErrTypeResourceNotFound, "task %q does not exist", guid)
}

// Task returns the task, or an ErrResourceNotFound error.
func (t *sqlTx) Task(taskGUID string) (*Task, error) {
	if !sqlStorable(taskGUID) {
		return nil, sqlNotFoundTask(taskGUID)
	}
	var data string
	err := t.tx.QueryRowContext(t.ctx, t.s.bind(`SELECT data FROM tasks WHERE task_guid = ?`), taskGUID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sqlNotFoundTask(taskGUID)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read task %q: %w", taskGUID, err)
	}
	task := new(Task)
	if err := json.Unmarshal([]byte(data), task); err != nil {
		return nil, fmt.Errorf("the stored task %q is not valid JSON: %w", taskGUID, err)
	}
	return task, nil
}

// Tasks lists the tasks that match every field set in filter, sorted by
// task guid.
func (t *sqlTx) Tasks(filter TasksRequest) ([]*Task, error) {
	out := []*Task{}
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"domain", filter.Domain}, {"cell_id", filter.CellID}} {
		if c.v == "" {
			continue
		}
		if !sqlStorable(c.v) {
			return out, nil
		}
		where = append(where, c.col+" = ?")
		args = append(args, c.v)
	}
	q := `SELECT task_guid, data FROM tasks`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list tasks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var guid, data string
		if err := rows.Scan(&guid, &data); err != nil {
			return nil, fmt.Errorf("cannot list tasks: %w", err)
		}
		task := new(Task)
		if err := json.Unmarshal([]byte(data), task); err != nil {
			return nil, fmt.Errorf("the stored task %q is not valid JSON: %w", guid, err)
		}
		out = append(out, task)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list tasks: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskGUID < out[j].TaskGUID })
	return out, nil
}

// CreateTask stores a new task, or returns an ErrResourceExists error when
// its guid is taken.
func (t *sqlTx) CreateTask(task *Task) error {
	if task == nil {
		return NewError(ErrTypeInvalidRequest, "no task to create")
	}
	if err := t.writable([2]string{"task_guid", task.TaskGUID}, [2]string{"domain", task.Domain},
		[2]string{"cell_id", task.CellID}, [2]string{"state", task.State}); err != nil {
		return err
	}
	data, err := sqlEncode(task)
	if err != nil {
		return fmt.Errorf("cannot encode task %q: %w", task.TaskGUID, err)
	}
	res, err := t.exec(`INSERT INTO tasks (task_guid, domain, cell_id, state, data) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (task_guid) DO NOTHING`, task.TaskGUID, task.Domain, task.CellID, task.State, data)
	if err != nil {
		return fmt.Errorf("cannot create task %q: %w", task.TaskGUID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("cannot create task %q: %w", task.TaskGUID, err)
	} else if n == 0 {
		return NewError(ErrTypeResourceExists, "task %q already exists", task.TaskGUID)
	}
	return nil
}

// UpdateTask replaces a stored task, or returns an ErrResourceNotFound
// error when there is none.
func (t *sqlTx) UpdateTask(task *Task) error {
	if task == nil {
		return NewError(ErrTypeInvalidRequest, "no task to update")
	}
	if err := t.writable([2]string{"domain", task.Domain}, [2]string{"cell_id", task.CellID}, [2]string{"state", task.State}); err != nil {
		return err
	}
	if !sqlStorable(task.TaskGUID) {
		return sqlNotFoundTask(task.TaskGUID)
	}
	data, err := sqlEncode(task)
	if err != nil {
		return fmt.Errorf("cannot encode task %q: %w", task.TaskGUID, err)
	}
	res, err := t.exec(`UPDATE tasks SET domain = ?, cell_id = ?, state = ?, data = ? WHERE task_guid = ?`,
		task.Domain, task.CellID, task.State, data, task.TaskGUID)
	return t.changedOne(res, err, "update", func() error { return sqlNotFoundTask(task.TaskGUID) },
		fmt.Sprintf("task %q", task.TaskGUID))
}

// DeleteTask removes a task, or returns an ErrResourceNotFound error when
// there is none.
func (t *sqlTx) DeleteTask(taskGUID string) error {
	if t.readOnly {
		return errSQLReadOnly
	}
	if !sqlStorable(taskGUID) {
		return sqlNotFoundTask(taskGUID)
	}
	res, err := t.exec(`DELETE FROM tasks WHERE task_guid = ?`, taskGUID)
	return t.changedOne(res, err, "delete", func() error { return sqlNotFoundTask(taskGUID) },
		fmt.Sprintf("task %q", taskGUID))
}
