"""expected rows: status, unit and paper_std as columns (catalog/schema.py); 64-bit run seeds

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("expectedresult", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )
        batch_op.add_column(sa.Column("paper_std", sa.Float(), nullable=True))
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.alter_column(
            "seed", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.alter_column(
            "seed", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=True
        )
    with op.batch_alter_table("expectedresult", schema=None) as batch_op:
        batch_op.drop_column("paper_std")
        batch_op.drop_column("unit")
        batch_op.drop_column("status")
