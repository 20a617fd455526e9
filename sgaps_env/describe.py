"""Print the state-vector field table as Markdown: ``python -m sgaps_env.describe``."""
from sgaps_env.state import field_table_markdown

if __name__ == "__main__":
    print(field_table_markdown())
