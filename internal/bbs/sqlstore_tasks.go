package bbs

import (
	"fmt"
	"sort"
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
	return sqlGet[Task](t, fmt.Sprintf("task %q", taskGUID), func() error { return sqlNotFoundTask(taskGUID) },
		`SELECT data FROM tasks WHERE task_guid = ?`, taskGUID)
}

// Tasks lists the tasks that match every field set in filter, sorted by
// task guid.
func (t *sqlTx) Tasks(filter TasksRequest) ([]*Task, error) {
	out := []*Task{}
	where, args, ok := sqlEquals([2]string{"domain", filter.Domain}, [2]string{"cell_id", filter.CellID})
	if !ok {
		return out, nil
	}
	var guid string
	out, err := sqlList(t, out, "tasks", func() string { return fmt.Sprintf("task %q", guid) },
		sqlWhere(`SELECT task_guid, data FROM tasks`, where), args, &guid)
	if err != nil {
		return nil, err
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
	return createdOne(res, err, fmt.Sprintf("task %q", task.TaskGUID))
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
